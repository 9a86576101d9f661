def to_binary(n):
    if n == 0:
        return "0"
    digits = ""
    while n > 0:
        digits += str(n % 2)
        n //= 2
    return digits


"""
Binary representation of a non-negative integer, most significant bit first, without prefix.
Example: to_binary(6) == "110"
"""
