"""Model families: each one folder, registered in ``registry``
(docs/FAMILIES.md)."""
