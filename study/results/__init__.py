"""Shared ground, the results store: takes trial and metric rows, gives the run's parquet
tables (``metrics.parquet``, ``trials.parquet``; ``finalists.parquet`` in `.finalists`).

See docs/CONTRACTS.md ("study/results").
"""

from study.results.trials import (
    COST_COLUMNS,
    GRIDS,
    METRIC_KEY,
    METRIC_SCHEMA,
    METRICS_FILE,
    OPTIONAL,
    STATUSES,
    TABLE_METRICS,
    TRIAL_KEY,
    TRIAL_SCHEMA,
    TRIALS_FILE,
    ResultsStore,
    best_trials,
    chosen_postprocessing,
    displayed_grid,
    displayed_test,
    drop_phase,
    ranked_trials,
    read_metrics,
    read_table,
    read_trials,
    write_parquet_atomic,
)

__all__ = ["COST_COLUMNS", "GRIDS", "METRICS_FILE", "METRIC_KEY", "METRIC_SCHEMA", "OPTIONAL", "STATUSES",
           "TABLE_METRICS", "TRIALS_FILE", "TRIAL_KEY", "TRIAL_SCHEMA", "ResultsStore",
           "best_trials", "chosen_postprocessing", "displayed_grid", "displayed_test",
           "drop_phase", "ranked_trials", "read_metrics", "read_table", "read_trials",
           "write_parquet_atomic"]
