"""Test helper: fits that train one batch per chunk and act after a given chunk."""

from cbackprop import _session, trainer


def interrupt_after(monkeypatch, chunks, action):
    """One batch per chunk; `action(session)` after that many chunks."""
    monkeypatch.setattr(trainer, "CHUNK_SECONDS", 0.0)
    original = _session.TrainingSession._train_chunk
    calls = []

    def counted(self, pos, stop):
        out = original(self, pos, stop)
        calls.append(pos)
        if len(calls) == chunks:
            action(self)
        return out

    monkeypatch.setattr(_session.TrainingSession, "_train_chunk", counted)
