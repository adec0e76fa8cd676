"""Running cells: the pipeline of one cell, the scheduler of many, the inputs digest
that makes runs incremental, the project's files, progress."""
