"""Generative visualization (paper section 3.4): HMC samples of any node,
drawn by the sampler of gencnn/sampling/.

    receptive_field  which input pixels a convolutional node sees
                     (receptive_field, input_crop)
    node             one node end to end: open_node, then sample_node (the
                     receptive-field crop, q's draws outside it), and the
                     samples file
    figures          input units -> pixels, grids, trajectories, PNGs
    settings         a run's options (a table of Setting rows), the presets
                     that fill them in (one row each), their checks and q
    visualize        a run end to end: node, q, samples, summary, figures

tools/hmc_visualize.py is the command line around `settings` and `visualize`.
"""
