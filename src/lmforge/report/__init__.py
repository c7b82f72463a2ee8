"""Reports: plots and run summaries."""
