"""A node's chains sampled as shards: tasks on a Dask cluster, each writing
its own file, and a merge that checks them.

Given a fixed step size the chains are independent, each draws from its own
random stream (hmc.chain_rng) and is computed in a block of chains of one
fixed size (hmc.chain_blocks), so any split of the chain ids into
contiguous shards, run anywhere, gives the chains of one process bit for
bit. Here a shard is one task:

    out = sample_on_dask(plan, meta, "local", workers=4, shard_chains=64,
                         shard_dir="out/shards")

starts a dask.distributed LocalCluster of 4 worker processes with one
thread each ("local"), or connects to a running scheduler (its address,
e.g. one started by dask-jobqueue's SLURMCluster; docs/scaling.md), runs one
task per shard (run_shard: build the shard's chains, hmc.run_chains, write
chains_FIRST-LAST.npz atomically) and merges the files. A worker that dies
mid-task (killed, out of memory) loses only its task: the scheduler reruns
it on another worker, and since a shard's chains depend on nothing but the
run's description and their ids, the rerun writes the same file.

The file of a shard is the samples.npz format of tools/hmc_visualize.py
(`save`), whose `meta` describes the run: seed, net (a hash of the
NetParameter and the weights file), q (a hash of the reference
distributions), the settings that shape a chain (sampler, step, mass,
schedule, chain block, crop, ...) and the shard's chain ids. `merge`
refuses shards that differ in any of those, and chain ids with a gap or an
overlap, with one line (gencnn.cli.UserError): tools/hmc_merge.py merges
the samples.npz of `--chain-offset` runs (a Slurm array job) the same way.
"""
import contextlib
import hashlib
import io
import json
import logging
import math
import os
import pickle
import tempfile
import uuid

import numpy as np

from gencnn import cli, files
from gencnn.sampling import hmc, parallel

# samples.npz's names of run_chains's per-chain arrays (chains first) and
# per-iteration arrays (iterations x chains); the rest are the run's.
CHAIN_ARRAYS = {"x": "samples", "chain_mean": "chain_mean"}
ITERATION_ARRAYS = {"trace": "f", "accepted": "accepted", "accept_prob": "accept_prob",
                    "delta_h": "delta_h", "divergent": "divergent", "sq_norm": "sq_norm"}


# What a samples.npz must hold to be merged: its arrays and its meta's keys.
ARRAYS = ("x", "y", "chain_mean", "step_size", "snapshots", "snapshot_iters") + \
    tuple(ITERATION_ARRAYS)
META_KEYS = ("seed", "net", "q", "settings", "first_chain", "num_chains", "counters",
             "final_step_size")


def _digest(*parts):
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def _file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _plain(value):
    """A JSON-able copy of an option value (numpy arrays and numbers as lists
    and Python numbers)."""
    if isinstance(value, dict):
        return {str(key): _plain(v) for key, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def describe_run(plan):
    """What a shard's chains depend on, besides their ids (a dict for
    `meta`): seed, net, q and settings. Two shards with equal descriptions
    are parts of one run."""
    spec = plan.spec
    options = dict(spec.sampler_options)
    seed = int(options.pop("seed", 0))
    references = (options.pop("reference", None), plan.reference)
    # (without a weights file every process draws its own fillers: never
    # merged with a run over a file; sample_on_dask refuses it)
    weights = _file_digest(spec.weights) if spec.weights else "fillers"
    settings = dict(options, blob=spec.blob, position=spec.position,
                    input_blob=spec.input_blob, sampled_shape=spec.input_shape,
                    input_shape=plan.input_shape, crop=plan.box, sampler=spec.sampler,
                    logit_bounds=spec.logit_bounds, transforms=spec.transforms,
                    transform_mode=spec.transform_mode, chain_block=spec.block,
                    **{key: plan.schedule[key] for key in ("step_size", "iters", "adapt",
                                                           "snapshot_iters")})
    return {"seed": seed,
            "net": _digest(spec.net_param, weights.encode()),
            "q": _digest(pickle.dumps(references, protocol=4)),
            "settings": _plain(settings)}


def shard_meta(run, out, first_chain):
    """`meta` of a file holding run_chains's `out` for chains first_chain, ...
    of the run described by `run` (describe_run)."""
    counters = {name: int(out[name]) for name in hmc.COUNTERS}
    return dict(run, first_chain=int(first_chain), num_chains=int(len(out["samples"])),
                counters=counters, final_step_size=float(out["final_step_size"]))


def save(path, out, units, meta=None, dtype=np.float32):
    """run_chains's `out` (chains as whole inputs), the chains' `units` and
    their `meta` as samples.npz, written atomically (tools/hmc_visualize.py
    describes the arrays); the states as `dtype` (a shard's file keeps
    float64: the merged set is then the one process's exactly)."""
    buffer = io.BytesIO()
    arrays = {name: out[key] for name, key in ITERATION_ARRAYS.items()}
    # "x" and "y" as tools/sample_quality.py reads a set: the file is one.
    np.savez_compressed(buffer, x=out["samples"].astype(dtype), y=units,
                        chain_mean=out["chain_mean"].astype(dtype),
                        step_size=out["step_size"],
                        snapshots=out["snapshots"].astype(dtype),
                        snapshot_iters=out["snapshot_iters"],
                        meta=np.array(json.dumps(meta if meta is not None else {})), **arrays)
    files.write_atomic(path, buffer.getvalue())


def load(path):
    """(arrays, meta) of a samples.npz; UserError if it cannot be read or has
    no shard description."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError) as err:
        raise cli.UserError("%s: not a readable samples file (%s)" % (path, err))
    except Exception as err:       # zipfile.BadZipFile and the like: a damaged file
        raise cli.UserError("%s: not a readable samples file (%s)"
                            % (path, type(err).__name__))
    try:
        meta = json.loads(str(arrays.pop("meta"))) if "meta" in arrays else {}
    except ValueError:
        meta = {}
    if not isinstance(meta, dict) or any(key not in meta for key in META_KEYS):
        raise cli.UserError("%s has no description of its run and chains (written by an "
                            "older gencnn, or damaged): it cannot be merged safely" % path)
    missing = [name for name in ARRAYS if name not in arrays]
    if missing:
        raise cli.UserError("%s lacks the arrays %s: not a samples file"
                            % (path, ", ".join(missing)))
    return arrays, meta


def _first_difference(a, b):
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return key, a.get(key), b.get(key)
    return None


def merge(paths):
    """The shards in files `paths` as one set: (arrays as in samples.npz, meta).
    UserError (one line) for shards of different runs (seed, net, q or a
    setting), or chain ids with a gap or an overlap."""
    if not paths:
        raise cli.UserError("no shards to merge")
    shards = [(path,) + load(path) for path in paths]
    path0, _, meta0 = shards[0]
    for path, arrays, meta in shards[1:]:
        for key, what in (("seed", "seed"), ("net", "net (prototxt or weights)"),
                          ("q", "reference q")):
            if meta.get(key) != meta0.get(key):
                raise cli.UserError("shards of different runs: %s and %s differ in their %s%s"
                                    % (path0, path, what, " (%s against %s)"
                                       % (meta0.get(key), meta.get(key))
                                       if key == "seed" else ""))
        difference = _first_difference(meta0["settings"], meta["settings"])
        if difference:
            raise cli.UserError("shards of different runs: %s and %s differ in %s (%s "
                                "against %s)" % ((path0, path) + difference))
    for path, arrays, meta in shards:
        if len(arrays["x"]) != meta["num_chains"] or \
                arrays["trace"].shape[1:] != (meta["num_chains"],):
            raise cli.UserError("%s: its arrays do not hold the %d chains it describes"
                                % (path, meta["num_chains"]))
    shards.sort(key=lambda shard: shard[2]["first_chain"])
    for (path_a, _, a), (path_b, _, b) in zip(shards, shards[1:]):
        end_a = a["first_chain"] + a["num_chains"]
        if b["first_chain"] < end_a:
            raise cli.UserError("shards overlap: %s holds chains %d-%d, %s chains %d-%d"
                                % (path_a, a["first_chain"], end_a - 1, path_b,
                                   b["first_chain"], b["first_chain"] + b["num_chains"] - 1))
        if b["first_chain"] > end_a:
            raise cli.UserError("chains %d-%d are in no shard (a gap between %s and %s)"
                                % (end_a, b["first_chain"] - 1, path_a, path_b))
    parts = [arrays for _, arrays, _ in shards]
    merged = dict(parts[0])
    for name in ("x", "y", "chain_mean"):
        merged[name] = np.concatenate([part[name] for part in parts])
    for name in ITERATION_ARRAYS:
        merged[name] = np.concatenate([part[name] for part in parts], axis=1)
    # (snapshots and step sizes: the first shard's, whose first chain is the
    # merged set's first, which is the chain one process snapshots)
    metas = [meta for _, _, meta in shards]
    counters = {name: sum(meta["counters"][name] for meta in metas)
                for name in metas[0]["counters"]}
    counters["evaluations"] = metas[0]["counters"]["evaluations"]
    meta = dict(metas[0], num_chains=sum(meta["num_chains"] for meta in metas),
                counters=counters)
    return merged, meta


def as_out(arrays, meta):
    """run_chains's `out` (whole inputs, as node.sample_node returns it) of a
    merged set."""
    out = {key: arrays[name] for name, key in CHAIN_ARRAYS.items()}
    out.update({key: arrays[name] for name, key in ITERATION_ARRAYS.items()})
    out.update(step_size=arrays["step_size"], snapshots=arrays["snapshots"],
               snapshot_iters=arrays["snapshot_iters"], final_step_size=meta["final_step_size"], **meta["counters"])
    return out


def plan_shards(num_chains, shard_chains, block=hmc.CHAIN_BLOCK, first_chain=0):
    """The rows of each shard of `num_chains` chains (first_chain, ...): runs
    of whole blocks (hmc.chain_blocks) of about `shard_chains` chains (a
    whole number of blocks, at least one)."""
    layout = hmc.chain_blocks(first_chain + np.arange(num_chains), block)
    rows = [ids[real] - first_chain for ids, real in layout]
    per_shard = max(1, int(math.ceil(float(shard_chains) / block)))
    return [np.concatenate(rows[i:i + per_shard]) for i in range(0, len(rows), per_shard)]


def shard_name(first, last):
    return "chains_%06d-%06d.npz" % (first, last)


def run_shard(plan, rows, path, run):
    """A task: the chains `rows` of `plan` (node.SamplingPlan), sampled with
    its fixed step, as whole inputs, written to `path` with their meta.
    Divergences are not warned of here: the merged set's are, once."""
    spec = plan.spec
    chains = spec.build(rows)
    out = hmc.run_chains(chains, warn=lambda message: None, **plan.schedule)
    first = spec.first_chain + int(rows[0])
    plan.finish(out, first)
    save(path, out, spec.chain_units[rows], shard_meta(run, out, first), np.float64)
    return path


def _same(value):
    return value


@contextlib.contextmanager
def dask_client(scheduler, workers):
    """A dask.distributed Client: of a LocalCluster of `workers` worker
    processes, one thread and one OpenBLAS thread each, started here and
    closed on leaving ("local"), or of the scheduler at address `scheduler`."""
    from distributed import Client, LocalCluster
    if scheduler != "local":
        try:
            # (waits dask's distributed.comm.timeouts.connect, 30 s by default)
            client = Client(scheduler)
        except (OSError, ValueError) as err:       # refused, timed out, a bad address
            raise cli.UserError("cannot reach the Dask scheduler at %s: %s"
                                % (scheduler, err))
        with client:
            yield client
        return
    env = {name: "1" for name in parallel.THREAD_VARIABLES}
    # (":0": any free port for the scheduler's HTTP server, which runs even
    # without a dashboard; its default, 8787, warns when another cluster has it)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR,
                      env=env) as cluster, Client(cluster) as client:
        yield client


def sample_on_dask(plan, run, scheduler, workers, shard_chains, shard_dir, callback=None):
    """run_chains's `out` of all of plan's chains, sampled as shards of
    `shard_chains` chains (default: one per worker thread) on the Dask
    cluster of `scheduler` ("local": a LocalCluster of `workers` processes),
    each task writing its file into `shard_dir` (which the workers must
    see; None: a temporary folder, removed), merged; out["shards"] is their
    number. callback(done, total)
    after each shard."""
    spec = plan.spec
    if spec.weights is None:
        raise ValueError("sampling on Dask needs a weights file: each task loads its own "
                         "net, and Caffe's fillers would differ")
    if shard_dir is None:          # the shards are only a means: removed once merged
        with tempfile.TemporaryDirectory(prefix="gencnn-shards.") as folder:
            return sample_on_dask(plan, run, scheduler, workers, shard_chains, folder,
                                  callback)
    import dask
    from distributed import as_completed
    os.makedirs(shard_dir, exist_ok=True)
    with dask_client(scheduler, workers) as client:
        if shard_chains is None:
            slots = max(1, sum(client.nthreads().values()))
            shard_chains = int(math.ceil(spec.num_chains / float(slots)))
        shards = plan_shards(spec.num_chains, shard_chains, spec.block, spec.first_chain)
        paths = [os.path.join(shard_dir, shard_name(spec.first_chain + rows[0],
                                                    spec.first_chain + rows[-1]))
                 for rows in shards]
        tag = uuid.uuid4().hex[:8]          # a fresh key: never another run's result
        # The plan (its q may be megabytes) goes to the cluster once, as a
        # task's result that every shard depends on: were it lost with a
        # worker, the scheduler would compute it again, unlike scattered data.
        # (a fitted full-covariance q of MNIST's 784 pixels is ~14 MB pickled:
        # sent once, which dask's warning about large graphs need not say)
        with dask.config.set({"distributed.admin.large-graph-warning-threshold": "256MB"}):
            plan_future = client.submit(_same, plan, key="gencnn-plan-%s" % tag)
        futures = [client.submit(run_shard, plan_future, rows, path, run, pure=False,
                                 key="gencnn-shard-%s-%06d" % (tag, spec.first_chain + rows[0]))
                   for rows, path in zip(shards, paths)]
        for done, future in enumerate(as_completed(futures), 1):
            future.result()
            if callback is not None:
                callback(done, len(futures))
    out = as_out(*merge(paths))
    out["shards"] = len(paths)
    return out
