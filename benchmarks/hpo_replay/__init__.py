r"""HPO replay benchmark: record real learning curves once, replay many searches over them.

    python -m benchmarks.hpo_replay record [--workers 2]   # CPU hours, once, resumable
    python -m benchmarks.hpo_replay replay [--seeds 30]    # the policies over the table
    python -m benchmarks.hpo_replay record --design sobol --seeds 0 1   # the v2 table
    python -m benchmarks.hpo_replay lookup                 # its nearest lookup's error
    python -m benchmarks.hpo_replay replay --concurrency 1 2 4 \
        --table benchmarks/data/hpo_replay_curves_v2.parquet  # continuous space, side by side

See `record` (the table) and `replay` (the policies through study/tune) for details.
"""
