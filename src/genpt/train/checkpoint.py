"""placeholder"""
def load(path):
    raise NotImplementedError
