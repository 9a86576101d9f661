def gcd(a, b):
    if b == 0:
        return a
    return gcd(a % b, b)


"""
Greatest common divisor of two non-negative integers, by Euclid's algorithm.
Example: gcd(35, 21) == 7
"""
