"""HPO replay benchmark: record real learning curves once, replay many searches over them.

    python -m benchmarks.hpo_replay record [--workers 2]   # CPU hours, once, resumable
    python -m benchmarks.hpo_replay replay [--seeds 30]    # the policies over the table

See `record` (the table) and `replay` (the policies through study/tune) for details.
"""
