"""Downstream evaluation: readers for the standard benchmarks, linear SVM, few-shot, fine-tuning, part segmentation."""
