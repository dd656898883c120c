"""The signer remembers cookies that verified; that must never weaken verification."""

from hug_cookie_sessions.signing import VERIFIED_CACHE_SIZE, SessionSigner, new_session_id


def _flip(token: str, index: int) -> str:
    char = "A" if token[index] != "A" else "B"
    return token[:index] + char + token[index + 1 :]


def test_a_remembered_cookie_still_opens_and_any_altered_copy_is_rejected_every_time():
    signer = SessionSigner("secret-one")
    sid = new_session_id()
    token = signer.sign(sid)
    assert signer.unsign(token) == (sid, True)
    assert signer.unsign(token) == (sid, True)
    for index in (0, len(sid) - 1, len(sid) + 1, len(token) - 2):
        altered = _flip(token, index)
        assert signer.unsign(altered) is None
        assert signer.unsign(altered) is None


def test_a_cookie_remembered_by_one_signer_opens_nothing_under_other_keys():
    first, other = SessionSigner("secret-one"), SessionSigner("secret-two")
    token = first.sign(new_session_id())
    assert first.unsign(token) is not None
    assert other.unsign(token) is None


def test_a_cookie_signed_with_a_retired_key_is_still_reported_as_such_when_remembered():
    old, rotated = SessionSigner("old"), SessionSigner(["old", "new"])
    sid = new_session_id()
    token = old.sign(sid)
    assert rotated.unsign(token) == (sid, False)
    assert rotated.unsign(token) == (sid, False)


def test_the_memory_of_verified_cookies_is_bounded():
    signer = SessionSigner("secret-one")
    tokens = [signer.sign(new_session_id()) for _ in range(VERIFIED_CACHE_SIZE + 100)]
    for token in tokens:
        assert signer.unsign(token) is not None
    assert len(signer._verified) == VERIFIED_CACHE_SIZE
    assert signer.unsign(tokens[0]) is not None
