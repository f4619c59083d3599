"""The method and its machinery: models, anchors, fields, distances, the store, embeddings.

The lowest layer but viz: it imports no other part of the package (higher layers extend it through
`registry`, e.g. the zoo's `zoo:` specs). The public names are re-exported by `modelgif_core`.
"""
