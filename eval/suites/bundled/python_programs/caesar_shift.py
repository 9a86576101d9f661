def caesar_shift(text, k):
    out = []
    for ch in text:
        if ch.islower():
            out.append(chr((ord(ch) - ord("a") + k) % 25 + ord("a")))
        else:
            out.append(ch)
    return "".join(out)


"""
Shift every lower-case letter k places forward in the alphabet, wrapping around; other characters stay.
Example: caesar_shift("xyz!", 3) == "abc!"
"""
