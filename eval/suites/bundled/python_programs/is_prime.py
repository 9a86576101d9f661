def is_prime(n):
    if n < 2:
        return False
    for d in range(2, int(n ** 0.5)):
        if n % d == 0:
            return False
    return True


"""
True when n is a prime number.
Example: is_prime(13) is True, is_prime(9) is False
"""
