"""HMC chains of one node split over worker processes.

Chains are independent given the step size, each draws from its own random
stream (hmc.chain_rng(seed, chain id)) and is computed in a block of
ChainSpec.block chains (hmc.chain_blocks; a worker holds whole blocks), so
a run split over workers gives the same chains as one process, bit for bit:

    with WorkerChains(spec, workers=4) as chains:          # spec: a ChainSpec
        out = hmc.run_chains(chains, step_size, iters, adapt, ...)

This process keeps the loop (hmc.run_chains): the step-size adaptation,
which needs the mean acceptance over all chains each iteration, the
divergence warnings and the callback. Each iteration it sends the step size
to every worker, which runs one HMC iteration (50 leapfrog steps in the
paper's schedule) on its block of chains and answers with their per-chain
diagnostics: a few numbers per chain per iteration cross the pipes. (Shards
with a fixed step need no such lockstep: gencnn.sampling.shards runs them as
Dask tasks.)

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
                 sampler="hmc", transforms=None, transform_mode="random",
                 block=hmc.CHAIN_BLOCK):
        self.net_param = net_param.SerializeToString()
        self.weights, self.input_blob = weights, input_blob
        self.input_shape = tuple(input_shape)
        self.blob, self.chain_units = blob, np.asarray(chain_units)
        self.position = position
        # Pickled here, and unpickled wherever chains are built, this process
        # included: numpy arrays come back C-contiguous (q's eigenvectors are
        # a strided view before), and a matrix product over another layout
        # is another BLAS call, rounded differently.
        self._sampler_options = pickle.dumps(dict(sampler_options), pickle.HIGHEST_PROTOCOL)
        self.first_chain = int(first_chain)
        self.logit_bounds = logit_bounds      # the logit pixel model (hmc.LogitScore)
        self.sampler = sampler                # a key of langevin.SAMPLERS
        # the transformation-averaged score: the set's description (a
        # TransformSet keeps resampling matrices: rebuilt in the worker)
        self.transforms = None if transforms is None else transforms.describe()
        self.transform_mode = transform_mode
        self.block = int(block)               # chains per Caffe batch (hmc.chain_blocks)

    @property
    def sampler_options(self):
        """HMCSampler's options (a fresh copy)."""
        return pickle.loads(self._sampler_options)

    @property
    def num_chains(self):
        return len(self.chain_units)

    def build(self, rows, net=None):
        """The chains in `rows` (contiguous) in this process, from their own
        streams' initial states: a hmc.ChainGroup of one ChainBlock per
        block of self.block chains (hmc.chain_blocks), all on one net of
        that batch (`net`, when given, reshaped to it; else loaded)."""
        from caffe.proto import caffe_pb2
        from gencnn.sampling.langevin import SAMPLERS
        from gencnn.sampling.transforms import TransformSet, node_score
        rows = np.asarray(rows)
        if net is None:
            net_param = caffe_pb2.NetParameter.FromString(self.net_param)
            net = caffe_utils.load_net(net_param, self.weights, self.block, self.input_blob,
                                       input_shape=self.input_shape)
        else:
            blob = net.blobs[self.input_blob]
            blob.reshape(self.block, *self.input_shape)
            net.reshape()
        transforms = None if self.transforms is None else TransformSet.parse(self.transforms)
        options = self.sampler_options
        blocks = []
        for chain_ids, real in hmc.chain_blocks(self.first_chain + rows, self.block):
            # a padding slot takes the unit of its nearest chain of this run
            # (any unit would do: its rows are computed and dropped)
            slots = np.clip(chain_ids - self.first_chain, rows[0], rows[-1])
            score = node_score(net, self.blob, self.chain_units[slots], self.position,
                               self.input_blob, transforms, self.transform_mode,
                               options.get("seed", 0), chain_ids)
            if self.logit_bounds is not None:
                score = hmc.LogitScore(score, self.logit_bounds)
            sampler = SAMPLERS[self.sampler](score, chain_ids=chain_ids, **options)
            blocks.append(hmc.ChainBlock(
                sampler, sampler.initial_state((self.block,) + self.input_shape), real))
        return hmc.ChainGroup(blocks)


def worker_env(threads):
    """The environment of a fresh Python process with `threads` BLAS threads
    and this process's sys.path (it need not have been set up by env.sh)."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
                **{name: str(threads) for name in THREAD_VARIABLES})


def split_chains(num_chains, workers, block=hmc.CHAIN_BLOCK, first_chain=0):
    """The rows (0..num_chains-1) of each worker: contiguous runs of whole
    blocks of chains (hmc.chain_blocks, chains first_chain + row), as even
    as possible; fewer workers than asked when there are fewer blocks."""
    layout = hmc.chain_blocks(first_chain + np.arange(num_chains), block)
    rows = [ids[real] - first_chain for ids, real in layout]
    groups = np.array_split(np.arange(len(rows)), max(1, workers))
    return [np.concatenate([rows[i] for i in group]) for group in groups if len(group)]


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
        self.blocks = split_chains(spec.num_chains, workers, spec.block, spec.first_chain)
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
        return hmc.join_diagnostics(self._call(range(len(self.workers)), "step", step_size,
                                               accumulate))

    def state(self, chain):
        for index, chain_ids in enumerate(self.blocks):
            if chain_ids[0] <= chain <= chain_ids[-1]:
                return self._call([index], "state", chain - chain_ids[0])[0]
        raise IndexError("chain %d out of range (%d chains)" % (chain, self.num_chains))

    def finish(self):
        """(final x, chain sums, counters) joined over the workers
        (hmc.join_finished)."""
        return hmc.join_finished(self._call(range(len(self.workers)), "finish"))

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
