"""gencnn: generative modeling of CNNs (Dai, Lu & Wu, ICLR 2015) on real Caffe.

The importable library behind tools/ (thin command-line front ends):

    cli                  one error convention (UserError, run), parser, option types
    files                atomic writes, a run's JSON records and log
    config               where things live (repository, data, ../shared)
    caffe_utils          Caffe's files and tools: prototxt/solver reading and
                         variants, lr schedules, caffemodel checks, a net ready
                         for df/dx (load_net), binaries, logs
    protocols            the per-net training protocols: epochs, switch, lr
                         schedules, the paper's numbers
    netgen               every net and solver of prototxt/ and solvers/, built
                         as caffe_pb2 messages from the protocols
    data/                MNIST, CIFAR-10, ImageNet lists -> Caffe LMDBs (lmdb_io)
    run_folder           a training run's folder: state, resume, lock, checkpoints,
                         and the step loop both trainers run in (RunFolder.train)
    multi_gpu            training on one GPU or several joined by NCCL
    two_stage            GG pre-training then DG fine-tuning, resumable
    experiment           the DG / GG / GG+DG studies over seeds (Table 1, CIFAR-10)
    generative_learning  learning p_y(x) from synthesized images (paper section 5)
    evaluation           5-crop / centre-crop ImageNet evaluation
    sample_quality       measures of sample sets (judge, IS, LeNet-FID, ...) and
                         their baselines
    sampling/            the HMC sampler (eq. 11-13), the reference q's, chains
                         over worker processes
    visualization/       HMC samples of any node of a net, and their figures
    reports/             statistics, JSON, Markdown and plots of the runners' results

The eq. 10 loss layer itself lives in python_layers/generative_loss_layer.py,
where Caffe's Python layer loader finds it (and the synthesis loss beside it).
"""
