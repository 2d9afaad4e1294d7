"""Line ids reserved per batch, for stores that need them given (the opensearch backend): a
retried bulk then writes the same documents, never a second copy of a line."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("logs", "0003_exportchunk")]

    operations = [
        migrations.AddField(model_name="ingestbatch", name="first_line_id",
                            field=models.BigIntegerField(blank=True, null=True)),
        migrations.CreateModel(name="LineIdBlock", fields=[("id", models.BigAutoField(primary_key=True, serialize=False))]),
    ]
