"""The GitHub Actions and Buildkite pipelines generated from the matrix."""
