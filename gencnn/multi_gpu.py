"""Training on GPUs: one GPU, or several joined by NCCL as BVLC's
python/train.py (one process per GPU; rank 0, this process, tests and
checkpoints, the others only step). What gencnn/two_stage.py uses for
--gpus; a CPU-only Caffe (the project's build) fails here in one line."""
import os

import caffe
from gencnn import run_folder
from gencnn.cli import UserError


def gpu_support():
    """(CUDA, NCCL) of the pycaffe in use: a CPU-only build (ours) has neither.
    CUDA shows as the CUDA runtime or cuBLAS mapped into this process once
    caffe is imported; NCCL as caffe.NCCL.new_uid, which BVLC's _caffe.cpp
    defines only when built with USE_NCCL."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        maps = ""
    cuda = "libcudart" in maps or "libcublas" in maps
    nccl = hasattr(caffe, "NCCL") and hasattr(caffe.NCCL, "new_uid")
    return cuda, nccl


def check_gpus(gpus):
    """Fail fast, in one line, when this Caffe cannot train on `gpus`."""
    if not gpus:
        return
    cuda, nccl = gpu_support()
    where = os.path.dirname(os.path.dirname(os.path.abspath(caffe.__file__)))
    if not cuda:
        raise UserError("training on a GPU needs a Caffe built with CUDA; the one in use "
                        "(%s) is CPU-only: see docs/scaling.md" % where)
    if len(gpus) > 1 and not nccl:
        raise UserError("training on %d GPUs needs a Caffe built with NCCL (USE_NCCL := 1); "
                        "the one in use (%s) has none: see docs/scaling.md" % (len(gpus), where))


def set_device(gpus, rank):
    caffe.set_mode_gpu()
    caffe.set_device(gpus[rank])
    if len(gpus) > 1:
        caffe.set_solver_count(len(gpus))
        caffe.set_solver_rank(rank)
        caffe.set_multiprocess(True)


def join_nccl(solver, uid):
    """Join the NCCL clique `uid`: take rank 0's weights, then all-reduce the
    gradients every iteration (per layer when layer_wise_reduce is set)."""
    nccl = caffe.NCCL(solver, uid)
    nccl.bcast()
    solver.add_callback(nccl)
    if solver.param.layer_wise_reduce:
        solver.net.after_backward(nccl)
    return nccl


def gpu_worker(solver_file, gpus, rank, uid, stage_iters, out_dir, checkpoint):
    """Rank > 0 of a multi-GPU stage (a separate process): step in lockstep,
    from the run folder's `checkpoint` when resuming."""
    set_device(gpus, rank)
    solver = caffe.get_solver(solver_file)
    if checkpoint:
        run_folder.RunFolder(out_dir, "two_stage.log").restore(solver, checkpoint)
    nccl = join_nccl(solver, uid)   # referenced until the steps are done
    solver.step(stage_iters - solver.iter)
    del nccl


def start_workers(solver, solver_file, gpus, stage_iters, out_dir, restore):
    """Several GPUs, as BVLC's python/train.py: one process per GPU, joined
    by NCCL (gradients summed, then averaged, every iteration). This
    process is rank 0 and does all testing and checkpointing; ranks 1.. only
    step, starting from rank 0's weights (NCCL broadcasts them). Returns the
    worker processes and this rank's NCCL object, which the caller holds
    while stepping (Caffe keeps only a raw pointer to it)."""
    import multiprocessing
    uid = caffe.NCCL.new_uid()
    context = multiprocessing.get_context("spawn")   # no CUDA state across a fork
    workers = []
    for rank in range(1, len(gpus)):
        worker = context.Process(target=gpu_worker, name="rank%d" % rank,
                                 args=(solver_file, gpus, rank, uid, stage_iters, out_dir,
                                       restore))
        worker.start()
        workers.append(worker)
    return workers, join_nccl(solver, uid)
