"""Reports of the runners: statistics, JSON, Markdown and plots, apart from
the code that trains and samples.

    stats                mean, sd, 95 % t interval; Welch's t-test
    study                a DG / GG / GG+DG study's JSON, Markdown and curves
                         (gencnn/experiment.py's Runner.report)
    curves               a training run's curves.png (two_stage,
                         generative_learning)
    generative_learning  results/generative_learning.json: the section-5 runs
                         and their T = 1 samples, judged
    sample_quality       the sample-quality report: sets and baselines
                         measured (gencnn/sample_quality.py's measures), its
                         settings, recompute check and Markdown table
"""
