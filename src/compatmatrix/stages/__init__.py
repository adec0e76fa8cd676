"""The stages of a cell, each a function from typed inputs to a typed result:
resolve, build (with the metadata the build backend prepares), audit, install,
identity, suites. No stage imports another."""
