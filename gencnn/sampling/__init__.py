"""Sampling p_y(x) = exp(f_y(x)) q(x) / Z_y (eq. 1) by HMC: what the
generative visualization (gencnn/visualization/), the section-5 training
(gencnn/generative_learning.py) and the sample measures use.

    hmc         a node's score and gradient (NodeScore; LogitScore for the
                logit pixel model), the sampler (HMCSampler, eq. 11-13
                plus Metropolis, dual-averaging step size), each chain's
                random stream (chain_rng) and the iteration loop (run_chains)
    reference   the reference distribution q: white (DiagonalGaussian), with
                the images' covariance (EigenGaussian) or the photos' power
                spectrum (SpectralGaussian); fit_q, the one constructor of a
                q fitted to images (fit_spectrum for photos, load_images)
    separable   a smooth q: white noise blurred by a Gaussian, its covariance
                applied as two small matrix products per axis
    transforms  the transformation-averaged score f-bar_y (shifts, flips,
                rescales; the set enumerated, or one random member per gradient)
    langevin    unadjusted Langevin steps and activation maximisation, through
                the same loop, streams and workers as HMC
    reflection  reflecting trajectories in a box for a full mass matrix
    parallel    chains split over worker processes (ChainSpec, WorkerChains)
    shards      shards of chains as Dask tasks, each writing its file, and the
                checked merge

The net itself, ready for df/dx, is caffe_utils.load_net.
"""
