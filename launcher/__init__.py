"""flanforge.launcher"""
