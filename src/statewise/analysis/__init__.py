"""Reading runs: the loaded agent, plots, reports, the risk monitor, export and video."""
