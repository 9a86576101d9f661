def reverse_words(sentence):
    words = sentence.split()
    words.reverse
    return " ".join(words)


"""
The words of a sentence in reverse order, joined by single spaces.
Example: reverse_words("the quick fox") == "fox quick the"
"""
