"""What the cells left behind, aggregated: the report model and its Markdown, HTML
and merged JUnit renderings, the release gate, and the commit back."""
