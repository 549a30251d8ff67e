"""flanforge.mixtures"""
