def digit_sum(n):
    total = 0
    while n > 0:
        total += n % 10
        n //= 10
    return total


"""
Sum of the decimal digits of an integer; the sign is ignored.
Example: digit_sum(-123) == 6
"""
