"""The reference gateway: a faithful implementation of the OriginalPoint contract with mock models.

It is the embedded default target of `opconform run`, the fixture of the project's own tests, and,
through switchable faults (`opconform.gateway.faults`), the proof that each conformance check can
fail.
"""
