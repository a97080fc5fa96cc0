from keras_lrn.models.table import markdown_table

print(markdown_table())
