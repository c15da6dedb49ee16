// Unit tests of the manager: written next.
