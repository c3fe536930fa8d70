"""Device models: QPU descriptions (coupling map, native gates, calibration) as Qiskit targets."""
