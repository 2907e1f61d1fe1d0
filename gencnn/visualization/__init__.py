"""Generative visualization (paper section 3.4): HMC samples of any node.

    hmc              the net ready for df/dx (load_net), a node's score and
                     gradient (NodeScore), the sampler (HMCSampler, eq. 11-13
                     plus Metropolis, dual-averaging step size)
    reference        the reference distribution q: white (DiagonalGaussian,
                     fit_reference) or with the photos' power spectrum
                     (SpectralGaussian, fit_spectrum, load_images)
    receptive_field  which input pixels a convolutional node sees
                     (receptive_field, input_crop)
    node             one node end to end: open_node, then sample_node (the
                     receptive-field crop, q's draws outside it), and the
                     samples file
    figures          input units -> pixels, grids, trajectories, PNGs

tools/hmc_visualize.py is the command line around `node` and `figures`.
"""
