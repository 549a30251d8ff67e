"""flanforge.kernels"""
