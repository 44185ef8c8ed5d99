"""Analysis tools: attention-matrix spectra and structured-matrix fits."""
