def caesar_shift(text, k):
    out = []
    for ch in text:
        if ch.islower():
            out.append(chr((ord(ch) - ord("a") + k) % 26 + ord("a")))
        else:
            out.append(ch)
    return "".join(out)
