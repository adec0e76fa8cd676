"""The values everything else passes around: matrix.yaml parsed (spec, located YAML,
field checks), the planned cells, the project's metadata, the work directory's
layout and the cell record. No subprocess, no stage."""
