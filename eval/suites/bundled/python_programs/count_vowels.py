def count_vowels(text):
    return sum(1 for ch in text.lower() if ch in "aeio")


"""
Number of vowels (a, e, i, o, u; either case) in a string.
Example: count_vowels("Ubuntu") == 3
"""
