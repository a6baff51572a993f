"""The on-device runtime: source -> detector -> aligner -> classifier backend -> tracker -> sinks."""
