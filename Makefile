# gencnn: make demo | make test | make test-fast | make setup | make bench
SHELL := /bin/bash
ENV := . ./env.sh &&

.PHONY: setup demo test test-fast bench clean help

help:
	@echo "make demo   set up if needed, then run the main job end to end"
	@echo "make test   run the test suite (pytest, real Caffe)"
	@echo "make test-fast  the suite without the tests marked slow"
	@echo "make setup  build/find Caffe, create .venv, write env.sh"
	@echo "make bench  print speed numbers (bench/)"

setup:
	@bash setup/setup.sh

demo: setup
	@$(ENV) python tools/demo.py

test: setup
	@$(ENV) python -m pytest -q tests

test-fast: setup
	@$(ENV) python -m pytest -q -m "not slow" tests

bench: setup
	@$(ENV) python bench/generative_loss_speed.py

clean:
	rm -rf env.sh .venv .pytest_cache
