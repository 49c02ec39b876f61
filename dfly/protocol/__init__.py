"""Wire types and rules shared by the supernode and the peers. Pure: no I/O."""
