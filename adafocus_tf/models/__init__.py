"""Networks: glance -> policy -> patches -> focus -> classifier."""
