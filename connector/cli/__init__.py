"""The command line: thin commands over the engine, the service and the stores."""
