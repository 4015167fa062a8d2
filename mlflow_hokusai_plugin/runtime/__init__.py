"""What the store and the server both use in a running process: settings from the environment,
the attester key, the request being served, metrics."""
