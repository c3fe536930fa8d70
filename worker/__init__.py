"""qfleet workers: warm processes that pop tasks from RQ and run them on engines."""
