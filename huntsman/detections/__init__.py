"""Custom detection rules: model, validation, scheduler (frequency -> lookback), continuous (NRT) evaluation of ingested batches, alert dedup."""
