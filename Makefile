# gencnn: make demo | make test | make setup | make bench
SHELL := /bin/bash
ENV := . ./env.sh &&

.PHONY: setup demo test bench clean help

help:
	@echo "make demo   set up if needed, then run the main job end to end"
	@echo "make test   run the test suite (pytest, real Caffe)"
	@echo "make setup  build/find Caffe, create .venv, write env.sh"
	@echo "make bench  print speed numbers (bench/)"

setup:
	@bash setup/setup.sh

demo: setup
	@$(ENV) python tools/demo.py

test: setup
	@$(ENV) python -m pytest -q tests

bench: setup
	@$(ENV) python bench/generative_loss_speed.py

clean:
	rm -rf env.sh .venv .pytest_cache
