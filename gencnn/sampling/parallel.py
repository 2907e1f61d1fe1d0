"""HMC chains of one node split over worker processes.

Chains are independent given the step size, and each draws from its own
random stream (hmc.chain_rng(seed, chain id)), so a run split over workers
gives the same chains as one process, to float32 rounding:

    with WorkerChains(spec, workers=4) as chains:          # spec: a ChainSpec
        out = hmc.run_chains(chains, step_size, iters, adapt, ...)

This process keeps the loop (hmc.run_chains): the step-size adaptation,
which needs the mean acceptance over all chains each iteration, the
divergence warnings and the callback. Each iteration it sends the step size
to every worker, which runs one HMC iteration (50 leapfrog steps in the
paper's schedule) on its block of chains and answers with their per-chain
diagnostics: a few numbers per chain per iteration cross the pipes.

Why processes and not threads: Caffe's CPU convolution runs one small im2col
+ GEMM per image, which a multi-threaded OpenBLAS speeds up little while its
threads spin (bench/hmc_speed.py). Each worker loads its own copy of the net.
"""
import os
import pickle
import subprocess
import sys
import traceback

import numpy as np

from gencnn import caffe_utils, files
from gencnn.cli import UserError
from gencnn.sampling import hmc

# Read by OpenBLAS (and OpenMP builds) when a worker imports numpy and caffe.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class ChainSpec(object):
    """What a worker needs to build its block of chains: the net (a
    NetParameter; for a node sampled on its receptive field, the truncated
    one), weights, input blob and the sampled input shape, the node (blob,
    one unit per chain, position in the sampled input) and HMCSampler's
    options (seed and reference q included), and for the logit pixel model
    its box (logit_bounds: the chains move in u). Row n is chain first_chain + n
    (its random stream: a shard of a larger run)."""

    def __init__(self, net_param, weights, input_blob, input_shape, blob, chain_units,
                 position, sampler_options, first_chain=0, logit_bounds=None,
                 sampler="hmc", transforms=None, transform_mode="random"):
        self.net_param = net_param.SerializeToString()
        self.weights, self.input_blob = weights, input_blob
        self.input_shape = tuple(input_shape)
        self.blob, self.chain_units = blob, np.asarray(chain_units)
        self.position = position
        self.sampler_options = dict(sampler_options)
        self.first_chain = int(first_chain)
        self.logit_bounds = logit_bounds      # the logit pixel model (hmc.LogitScore)
        self.sampler = sampler                # a key of langevin.SAMPLERS
        # the transformation-averaged score: the set's description (a
        # TransformSet keeps resampling matrices: rebuilt in the worker)
        self.transforms = None if transforms is None else transforms.describe()
        self.transform_mode = transform_mode

    @property
    def num_chains(self):
        return len(self.chain_units)

    def build(self, rows):
        """A ChainBlock of the chains in `rows` in this process, from their
        own streams' initial states."""
        from caffe.proto import caffe_pb2
        from gencnn.sampling.langevin import SAMPLERS
        from gencnn.sampling.transforms import TransformSet, node_score
        net_param = caffe_pb2.NetParameter.FromString(self.net_param)
        net = caffe_utils.load_net(net_param, self.weights, len(rows), self.input_blob,
                                   input_shape=self.input_shape)
        chain_ids = self.first_chain + np.asarray(rows)
        transforms = None if self.transforms is None else TransformSet.parse(self.transforms)
        score = node_score(net, self.blob, self.chain_units[rows], self.position,
                           self.input_blob, transforms, self.transform_mode,
                           self.sampler_options.get("seed", 0), chain_ids)
        if self.logit_bounds is not None:
            score = hmc.LogitScore(score, self.logit_bounds)
        sampler = SAMPLERS[self.sampler](score, chain_ids=chain_ids, **self.sampler_options)
        return hmc.ChainBlock(sampler, sampler.initial_state((len(rows),) + self.input_shape))


def worker_env(threads):
    """The environment of a fresh Python process with `threads` BLAS threads
    and this process's sys.path (it need not have been set up by env.sh)."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
                **{name: str(threads) for name in THREAD_VARIABLES})


def split_chains(num_chains, workers):
    """Contiguous blocks of chain ids, as even as possible, at most one per
    chain."""
    return [block for block in np.array_split(np.arange(num_chains), max(1, workers))
            if len(block)]


def serve():
    """A worker's life (run as `python -c "...; serve()"` by WorkerChains):
    read (spec, chain ids) from stdin, build the chains, then run the
    coordinator's calls (ChainBlock methods), one pickle in, one answer
    out, until `finish`. An exception goes back as text."""
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)        # anything else printed to stdout (Caffe, numpy) goes to stderr
    calls = sys.stdin.buffer

    def answer(status, value):
        pickle.dump((status, value), answers, pickle.HIGHEST_PROTOCOL)
        answers.flush()
    try:
        spec, chain_ids = pickle.load(calls)
        block = spec.build(chain_ids)
        answer("ok", None)
        while True:
            try:
                method, args = pickle.load(calls)
            except EOFError:        # the coordinator stopped early
                return
            answer("ok", getattr(block, method)(*args))
            if method == "finish":
                return
    except KeyboardInterrupt:       # Ctrl-C reaches the workers too: the coordinator reports it
        return
    except Exception:
        try:
            answer("error", traceback.format_exc())
        except OSError:
            pass


class WorkerChains(object):
    """The chains of `spec` in `workers` processes, behind ChainBlock's
    interface (step, state, finish) for hmc.run_chains. A context manager:
    the workers are stopped on leaving it, whatever happened.

    Each worker is a fresh interpreter (subprocess, not fork: pycaffe nets
    cannot be pickled nor shared, and OpenBLAS reads its thread count once,
    at import), with `threads` OpenBLAS threads and this process's sys.path;
    calls and answers are pickles over its stdin and stdout."""

    def __init__(self, spec, workers, threads=1):
        if spec.weights is None:
            raise ValueError("sampling in several workers needs a weights file: each "
                             "worker loads its own net, and Caffe's fillers would differ")
        self.num_chains = spec.num_chains
        self.blocks = split_chains(spec.num_chains, workers)
        env = worker_env(threads)
        command = [sys.executable, "-c", "from gencnn.sampling.parallel import serve; "
                   "serve()"]
        self.workers = []
        try:
            for chain_ids in self.blocks:
                worker = subprocess.Popen(command, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, env=env,
                                          preexec_fn=files.die_with_parent)
                self.workers.append(worker)
                self._send(worker, (spec, chain_ids))
            self._gather(range(len(self.workers)))      # every worker has built its chains
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _send(worker, message):
        pickle.dump(message, worker.stdin, pickle.HIGHEST_PROTOCOL)
        worker.stdin.flush()

    def _gather(self, indices):
        """The answers of workers `indices`, in order; RuntimeError with the
        worker's traceback if one failed, UserError if one died."""
        answers = []
        for index in indices:
            worker = self.workers[index]
            try:
                status, value = pickle.load(worker.stdout)
            except EOFError:        # killed from outside (or by the OOM killer): not a bug
                raise UserError("HMC worker %d died (exit status %s); the run is lost, rerun it"
                                % (index, worker.wait()))
            if status == "error":
                raise RuntimeError("HMC worker %d failed:\n%s" % (index, value))
            answers.append(value)
        return answers

    def _call(self, indices, method, *args):
        for index in indices:
            self._send(self.workers[index], (method, args))
        return self._gather(indices)

    def step(self, step_size, accumulate):
        """One HMC iteration in every worker at once; the diagnostics joined
        in chain order."""
        parts = self._call(range(len(self.workers)), "step", step_size, accumulate)
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def state(self, chain):
        for index, chain_ids in enumerate(self.blocks):
            if chain_ids[0] <= chain <= chain_ids[-1]:
                return self._call([index], "state", chain - chain_ids[0])[0]
        raise IndexError("chain %d out of range (%d chains)" % (chain, self.num_chains))

    def finish(self):
        """(final x, chain sums, counters): forward+backward passes of one
        worker (each ran as many as a single process would), the other
        counters summed over the workers."""
        parts = self._call(range(len(self.workers)), "finish")
        counters = {name: sum(p[2][name] for p in parts) for name in parts[0][2]}
        counters["evaluations"] = parts[0][2]["evaluations"]
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                counters)

    def close(self):
        """Stop the workers: closing its stdin ends one waiting for a call."""
        for worker in self.workers:
            for stream in (worker.stdin, worker.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        self.workers = []
