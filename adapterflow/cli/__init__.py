"""The `adapterflow` command line: run, validate, deploy, registry and stack commands. The top floor: may import
everything."""
