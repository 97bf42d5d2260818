"""Running the method: the trainer and its observers, collection, evaluation, resume, logs and run files."""
