"""AES-256-CBC decryption in pure Python, for encrypted variables files.

The executor may import only the standard library (it travels alone to
workers that have nothing but ``python3``), and the standard library has no
AES. Variables files are a few kilobytes, so a table-driven implementation
(FIPS-197's inverse cipher) is fast enough. Decryption only: encrypting is the
server's business.
"""

from __future__ import annotations

BLOCK = 16
ROUNDS = 14  # AES-256


def _multiply(a: int, b: int) -> int:
    """Product in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1."""
    product = 0
    while b:
        if b & 1:
            product ^= a
        a = ((a << 1) ^ 0x1B) & 0xFF if a & 0x80 else a << 1
        b >>= 1
    return product


def _sbox() -> tuple[list[int], list[int]]:
    # inverses through powers of the generator 3: a^-1 = 3^(255 - log3 a), in 256 steps
    # rather than a search (which would cost every `tentacle calamari` ~35 ms at import)
    power, logarithm = [0] * 255, [0] * 256
    value = 1
    for exponent in range(255):
        power[exponent], logarithm[value] = value, exponent
        value = _multiply(value, 3)
    inverse = [0] + [power[(255 - logarithm[a]) % 255] for a in range(1, 256)]
    sbox = []
    for value in range(256):
        b = inverse[value]
        s = b
        for shift in range(1, 5):
            s ^= ((b << shift) | (b >> (8 - shift))) & 0xFF
        sbox.append(s ^ 0x63)
    inverse_sbox = [0] * 256
    for value, substituted in enumerate(sbox):
        inverse_sbox[substituted] = value
    return sbox, inverse_sbox


SBOX, INVERSE_SBOX = _sbox()
_MUL = {factor: [_multiply(value, factor) for value in range(256)] for factor in (9, 11, 13, 14)}


class PaddingError(ValueError):
    """The plaintext's padding is wrong: most likely the wrong password."""


def _round_keys(key: bytes) -> list[list[int]]:
    if len(key) != 32:
        raise ValueError("AES-256 needs a 32-byte key")
    words = [list(key[i : i + 4]) for i in range(0, 32, 4)]
    rcon = 1
    for index in range(8, 4 * (ROUNDS + 1)):
        word = list(words[index - 1])
        if index % 8 == 0:
            word = [SBOX[b] for b in word[1:] + word[:1]]
            word[0] ^= rcon
            rcon = _multiply(rcon, 2)
        elif index % 8 == 4:
            word = [SBOX[b] for b in word]
        words.append([a ^ b for a, b in zip(words[index - 8], word, strict=True)])
    return [[byte for word in words[4 * r : 4 * r + 4] for byte in word] for r in range(ROUNDS + 1)]


def _decrypt_block(block: bytes, keys: list[list[int]]) -> list[int]:
    state = [b ^ k for b, k in zip(block, keys[ROUNDS], strict=True)]
    for round_number in range(ROUNDS - 1, -1, -1):
        # inverse ShiftRows (byte r + 4c holds row r, column c), then inverse SubBytes
        state = [INVERSE_SBOX[state[r + 4 * ((c - r) % 4)]] for c in range(4) for r in range(4)]
        state = [s ^ k for s, k in zip(state, keys[round_number], strict=True)]
        if round_number:
            state = _inverse_mix_columns(state)
    return state


def _inverse_mix_columns(state: list[int]) -> list[int]:
    m9, m11, m13, m14 = _MUL[9], _MUL[11], _MUL[13], _MUL[14]
    out = []
    for c in range(0, 16, 4):
        a0, a1, a2, a3 = state[c : c + 4]
        out += [
            m14[a0] ^ m11[a1] ^ m13[a2] ^ m9[a3],
            m9[a0] ^ m14[a1] ^ m11[a2] ^ m13[a3],
            m13[a0] ^ m9[a1] ^ m14[a2] ^ m11[a3],
            m11[a0] ^ m13[a1] ^ m9[a2] ^ m14[a3],
        ]
    return out


def decrypt_cbc(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Decrypt and remove PKCS#7 padding. Raises ValueError (PaddingError if the
    padding is wrong, which a wrong key almost always causes)."""
    if len(iv) != BLOCK or not ciphertext or len(ciphertext) % BLOCK:
        raise ValueError("AES-CBC needs a 16-byte IV and whole 16-byte blocks")
    keys = _round_keys(key)
    plain = bytearray()
    previous = iv
    for start in range(0, len(ciphertext), BLOCK):
        block = ciphertext[start : start + BLOCK]
        plain += bytes(p ^ q for p, q in zip(_decrypt_block(block, keys), previous, strict=True))
        previous = block
    padding = plain[-1]
    if not 1 <= padding <= BLOCK or plain[-padding:] != bytes([padding]) * padding:
        raise PaddingError("bad padding")
    return bytes(plain[:-padding])
