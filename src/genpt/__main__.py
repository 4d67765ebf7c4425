"""`python -m genpt` is the `genpt` command (what `torchrun -m genpt` launches)."""

from genpt.cli import main

raise SystemExit(main())
