"""What the entry points run, as functions a notebook can call: ``train.train(cfg)``,
``evaluate.evaluate(cfg)``; the loggers and the DDP plumbing beside them."""
