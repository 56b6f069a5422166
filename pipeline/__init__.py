"""winnow's spine: manifests, the document schema, readers and writers, stages, the runner and the CLI."""
